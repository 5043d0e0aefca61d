"""fedtune's trust plane: attestation evidence, verifiers, release policies and the sandbox."""
