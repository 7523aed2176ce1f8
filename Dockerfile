# SPOCO Studio: the same install as the Makefile, on a slim Python 3.11 image.
#   docker build -t spoco-studio .                                   # CPU torch (default)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t spoco-studio:cuda .
#   docker run -p 8501:8501 -v spoco-data:/data spoco-studio
FROM python:3.11-slim

ARG TORCH_PIN=torch==2.13.0
# PyTorch's CPU wheel index by default; a CUDA wheel index (cu124, ...) for a GPU build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SPOCO_DATA_DIR=/data PORT=8501 HOST=0.0.0.0

WORKDIR /app
# The locked versions, each checked against its hash; then torch (not in the lock) from its index.
COPY requirements.lock ./
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements.lock \
 && pip install --no-cache-dir --index-url "$TORCH_INDEX" "$TORCH_PIN" \
 && pip check

COPY . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .
VOLUME ["/data"]
EXPOSE 8501
CMD ["sh", "-c", "python -m storage seed-demo && streamlit run serve.py --server.address $HOST --server.port $PORT --server.headless true --browser.gatherUsageStats false"]
