# The kvstore application image: Django + gunicorn + the consumer process (one image, two commands).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Static files (browsable API, API docs) collected at build time; WhiteNoise serves them from gunicorn.
RUN python manage.py collectstatic --noinput -v0
EXPOSE 8000
ENV PYTHON=python KVSTORE_BIND=0.0.0.0
# One instance = the consumer process + gunicorn (bin/instance runs both, stops both).
CMD ["bin/instance", "8000"]
