"""The Django project that runs the store: settings, URL tree, WSGI entry point."""
