import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()

if settings.DEBUG:
    # Development: serve the apps' static/ directories as `manage.py runserver` does.  In
    # production, `manage.py collectstatic` and let nginx serve STATIC_ROOT (see below).
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    application = StaticFilesHandler(application)
