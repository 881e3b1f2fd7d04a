from sim.cli.main import main

# Guarded: a process started by multiprocessing's spawn imports the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
