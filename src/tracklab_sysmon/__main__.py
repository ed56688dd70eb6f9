"""`python -m tracklab_sysmon` runs the same CLI as `tracklab-sysmon`."""

from .launch import main

if __name__ == "__main__":
    main(prog_name="tracklab-sysmon")
