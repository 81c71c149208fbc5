"""Data stage: sources (hub or local files), checks, the synthetic demo set, and the LightningDataModule."""
