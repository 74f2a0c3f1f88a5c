"""Sends logs and metrics with the OpenTelemetry Python SDK (a real OTLP client).

Usage: sdk_send.py PROTOCOL ENDPOINT COUNT TAG [CA_FILE [CERT_FILE KEY_FILE]]
  PROTOCOL  grpc | http
  ENDPOINT  grpc: 127.0.0.1:4317   http: http://127.0.0.1:4318 (https:// with TLS)
  COUNT     number of log records to emit; the counter is incremented COUNT times
  TAG       written into every record body and as a resource attribute, so the
            test can find exactly what this run sent
  CA_FILE   TLS: the CA certificate that verifies the server
  CERT_FILE, KEY_FILE  mutual TLS: the client certificate and its key

Exits non-zero if an export failed.
"""
import logging
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

protocol, endpoint, count, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ca_file = sys.argv[5] if len(sys.argv) > 5 else None
cert_file, key_file = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else (None, None)

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    if ca_file:
        import grpc

        def read(path):
            return open(path, "rb").read() if path else None

        def credentials():
            return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))

        log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=False, credentials=credentials())
        metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=False, credentials=credentials())
    else:
        log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
        metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
elif protocol == "http":
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    tls = {}
    if ca_file:
        # requests lets these override the session's CA (psf/requests#3829).
        import os

        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            os.environ.pop(name, None)
        tls = {"certificate_file": ca_file}
        if cert_file:
            tls.update(client_certificate_file=cert_file, client_key_file=key_file)
    log_exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", **tls)
    metric_exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", **tls)
else:
    sys.exit(f"unknown protocol {protocol}")

resource = Resource.create({"service.name": "sdk-interop", "test.tag": tag})

# Record whether any export failed: the SDK logs failures instead of raising.
failures = []


class FailureCatcher(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.ERROR or "Failed to export" in record.getMessage():
            failures.append(record.getMessage())


logging.getLogger("opentelemetry").addHandler(FailureCatcher())

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter, max_export_batch_size=100))
app_logger = logging.getLogger("sdk-interop-app")
app_logger.propagate = False
app_logger.setLevel(logging.INFO)
app_logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
for i in range(count):
    app_logger.warning("interop %s record %d", tag, i, extra={"record.index": i})

reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
counter = meter_provider.get_meter("sdk-interop").create_counter("interop.requests", unit="1")
for i in range(count):
    counter.add(1, {"tag": tag})

logger_provider.force_flush()
logger_provider.shutdown()
meter_provider.force_flush()
meter_provider.shutdown()
if failures:
    sys.exit("export failed: " + "; ".join(failures[:3]))
print("sent", count, "records and", count, "counter increments with tag", tag)
