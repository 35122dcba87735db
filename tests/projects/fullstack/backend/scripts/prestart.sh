#! /usr/bin/env bash
# Wait for the database, run the migrations, create the first data.
set -e
python -m app.prestart
