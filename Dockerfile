FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml ./
COPY . .
RUN pip install --no-cache-dir -e . && useradd --system --home /app gateway && chown -R gateway /app
USER gateway
EXPOSE 8080
CMD ["python", "run_bots.py"]
