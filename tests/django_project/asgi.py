"""The test project under an ASGI server: ``uvicorn tests.django_project.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")
application = get_asgi_application()
