"""Serving stage (beside the pipeline): one base model in memory, many trained adapters routed by name."""
