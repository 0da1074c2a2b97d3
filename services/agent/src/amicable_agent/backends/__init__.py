"""Sandbox backends: ``local`` (processes on this machine) and ``kubernetes``
(agent-sandbox ``SandboxClaim``\\ s). Both implement
:class:`amicable_agent.sandboxes.SandboxBackend`."""
