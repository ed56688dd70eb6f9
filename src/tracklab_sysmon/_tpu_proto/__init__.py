"""Python modules generated from tpu_metric_service.proto (libtpu's runtime metrics service); see README.md."""
