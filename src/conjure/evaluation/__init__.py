"""Evaluation: conjure's own feature classifier and CLIP, FID / KID / IS / precision-recall through
torchmetrics with conjure's features, CLIP score and retrieval, bootstrap intervals and real-data floors."""
