"""One declarations-only module per project; see ``studies.space`` for the contract."""
