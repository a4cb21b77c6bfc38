"""tunelab's OpenAI-compatible server: files, fine-tuning jobs, models and chat over the local
trainer and the registry. `create_app(settings)` builds the FastAPI app; `tunelab serve` runs it.
"""

from tunelab.server.app import create_app
from tunelab.server.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
