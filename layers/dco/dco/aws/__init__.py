"""AWS adapters (boto3) for the ports the core names. Never imported by the pure core."""
