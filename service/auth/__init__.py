"""Who is calling: authenticated principals, tenants and authorization decisions."""
