"""The Lightning Trainer, assembled from config, and our extensions to it: callbacks (run stats, parameter summary,
RNG state, SIGTERM checkpoint, tracker run ids), atomic checkpoint IO, tracker set-up, precision."""
