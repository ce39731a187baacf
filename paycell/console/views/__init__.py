"""One module per console page: thin handlers that call the operator API's own functions."""
