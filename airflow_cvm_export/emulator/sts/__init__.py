"""Emulated STS (AssumeRole, AssumeRoleWithWebIdentity) and the CVM metadata service's CAM role credentials:
:mod:`.models` issues temporary credentials, :mod:`.responses` parses and serializes."""
