from django.db import models


class User(models.Model):
    id = models.CharField(primary_key=True, max_length=32)
    name = models.CharField(max_length=200)
    email = models.EmailField(max_length=254)
