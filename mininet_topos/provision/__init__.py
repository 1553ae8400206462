"""What a network needs before it starts: its PKI, each agent's config, network.json."""
