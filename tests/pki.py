"""Throw-away X.509 material for TLS tests: see libs/platform/devpki.py."""

from libs.platform.devpki import Issued, Pki

__all__ = ["Issued", "Pki"]
