.PHONY: demo test bench
demo:
	./scripts/demo
test:
	./scripts/test
bench:
	./scripts/setup
	.venv/bin/python -m bench $(ARGS)
