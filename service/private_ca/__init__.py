"""Private CA domain: CA hierarchy and certificate issuance."""
