import os

from pli.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pli.settings")
application = get_wsgi_application()
