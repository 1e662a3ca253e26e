.PHONY: run test install
run:      ## install what is missing, build, and start llmbill-proxy on its embedded defaults
	scripts/run
test:     ## install what is missing, build, and run every test (C++ and Python)
	scripts/test
install:  ## build and install llmbill into .venv
	scripts/install
