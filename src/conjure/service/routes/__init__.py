"""HTTP routes, one module per area: jobs, files, openai, ops."""
