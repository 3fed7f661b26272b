#!/usr/bin/env python
"""The baseline the store is measured against: the same users API on the Django ORM and
SQLite."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "baseline.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
