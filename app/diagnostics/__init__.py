"""Customer autodiagnostics (SPEC §3.6)."""

from app.diagnostics.service import Check, Outcome, PanelSource, Report, diagnose, skip_probe, tcp_probe

__all__ = ["Check", "Outcome", "PanelSource", "Report", "diagnose", "skip_probe", "tcp_probe"]
