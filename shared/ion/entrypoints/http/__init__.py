"""HTTP inbound adapters: thin request decoding / response encoding around `ion`."""
