"""jamspotter.serve: the HTTP service (detect, ask, OpenAI chat, health, metrics) and the operator dashboard.

See docs/design.md. `create_app(ServeSettings(model=...))` builds the FastAPI app; `jamspotter serve` runs it.
"""

from jamspotter.serve.app import create_app
from jamspotter.serve.server import running_server
from jamspotter.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "running_server"]
