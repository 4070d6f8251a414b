"""`python -m xray_lake`: the same command line as the `xray-lake` console script."""

from xray_lake.cli.app import main

if __name__ == "__main__":
    main()
