# pagelens API image. CPU by default; the GPU compose profile runs the same image with a GPU reserved
# (torch 2.9.1 from PyPI ships CUDA 12.8 libraries, so one image serves both).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PAGELENS_DATA_DIR=/data HF_HOME=/models/hf
# tesseract: OCR of scans and images (ingest/ocr.py), with the languages of PAGELENS_OCR_LANGUAGES.
# OFFICE=0 leaves out LibreOffice (~400 MB): DOCX/XLSX/PPTX/ODT/RTF/HTML uploads then fail with an
# error saying what to install; PDFs and images are unaffected.
ARG OFFICE=1
RUN apt-get update && apt-get install -y --no-install-recommends poppler-utils curl \
        tesseract-ocr tesseract-ocr-osd tesseract-ocr-eng tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-spa \
        tesseract-ocr-ita tesseract-ocr-nld tesseract-ocr-pol tesseract-ocr-por tesseract-ocr-jpn \
    && if [ "$OFFICE" = 1 ]; then apt-get install -y --no-install-recommends libreoffice-writer-nogui \
       libreoffice-calc-nogui libreoffice-impress-nogui fonts-liberation2 fonts-crosextra-carlito \
       fonts-crosextra-caladea fonts-dejavu-core; fi \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY pagelens ./pagelens
COPY ingest ./ingest
COPY index ./index
COPY retrieve ./retrieve
COPY answer ./answer
COPY api ./api
COPY ui ./ui
RUN pip install -c constraints.txt .
VOLUME ["/data", "/models"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["pagelens", "serve", "--host", "0.0.0.0", "--port", "8000"]
