"""Run stage: assemble the Trainer from config, fit, and write the run's outputs."""
