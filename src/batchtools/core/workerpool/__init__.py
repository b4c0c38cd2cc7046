"""The worker pool seen from the master: the claim log and which worker holds which job."""
