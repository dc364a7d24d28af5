"""The core every stage uses: params, files, errors, the stage CLI, portable math, YAML reading."""
