"""`python -m bench chaos`: uploads of every size and behaviour through nginx to two app
instances while storage fails and one instance restarts; then every stored byte is checked.

`clients.py` is what one client does (good uploads, disconnects, stalls, malformed bodies) over
a raw socket, `faults.py` the storage faults and the restart over time, `run.py` starts the
processes and checks the storage afterwards, `report.py` counts and writes the figures,
`cli.py` is the command.
"""
