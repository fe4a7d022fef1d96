"""The ways in: the command line (`interfaces.cli`) and the Slack slash command
(`interfaces.slack`); the Prefect flows live in `flows/`. The core (`restate/`) imports
none of them."""
