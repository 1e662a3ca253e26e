.PHONY: run test install
run:      ## install what is missing, build, and start llmbill's main job
	scripts/run
test:     ## install what is missing, build, and run every test (C++ and Python)
	scripts/test
install:  ## build and install llmbill into .venv
	scripts/install
