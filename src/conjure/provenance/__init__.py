"""Provenance: image metadata (A1111 parameters chunk); C2PA, watermark and audit log come with issue 4."""
