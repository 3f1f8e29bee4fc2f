"""Models nvfp4 knows how to obtain: ``bundled`` is the default demo model (SmolLM2-135M-Instruct)."""
