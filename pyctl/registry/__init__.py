"""Registry access: endpoint configuration (hosts.toml, certs.d, CRI) and the client."""
