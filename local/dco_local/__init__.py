"""Developer-side tools: the `dco` CLI, local stack, demo, simulator, benchmarks. Never shipped to Lambda."""
