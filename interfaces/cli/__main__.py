from interfaces.cli.commands import app

app()
