.PHONY: install test unit demo bench clean

install:
	bash scripts/install.sh

test: install
	.venv/bin/python -m pytest -q -p no:cacheprovider tests

unit: install
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit

demo: install
	bash scripts/demo.sh

bench: install
	.venv/bin/python -m bench

clean:
	rm -rf .state job-*
