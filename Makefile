# Convenience targets; each is one script under scripts/ or bench/.
.PHONY: setup demo test bench bench-bronze bench-silver bench-gold install cluster-start cluster-stop psql

setup:
	scripts/setup.sh
demo:
	scripts/demo.sh
test:
	scripts/test.sh
install:
	scripts/install-extension.sh
bench: bench-bronze bench-silver bench-gold
bench-bronze:
	bench/bronze.sh
bench-silver:
	bench/silver.sh
bench-gold:
	bench/gold.sh
cluster-start:
	scripts/cluster.sh start
cluster-stop:
	scripts/cluster.sh stop
psql:
	scripts/cluster.sh psql
