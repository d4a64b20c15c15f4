# Convenience targets; each is one script under scripts/ or bench/.
.PHONY: setup demo test coverage bench bench-bronze bench-silver bench-gold bench-api install cluster-start cluster-stop psql api-start api-stop token metrics-start metrics-stop

setup:
	scripts/setup.sh
demo:
	scripts/demo.sh
test:
	scripts/test.sh
coverage:
	scripts/coverage.sh
install:
	scripts/install-extension.sh
bench: bench-bronze bench-silver bench-gold bench-api
bench-bronze:
	bench/bronze.sh
bench-silver:
	bench/silver.sh
bench-gold:
	bench/gold.sh
bench-api:
	bench/api.sh
cluster-start:
	scripts/cluster.sh start
cluster-stop:
	scripts/cluster.sh stop
psql:
	scripts/cluster.sh psql
api-start:
	scripts/api.sh start
api-stop:
	scripts/api.sh stop
token:
	@scripts/api.sh token
metrics-start:
	scripts/metrics.sh start
metrics-stop:
	scripts/metrics.sh stop
