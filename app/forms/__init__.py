"""The request body: a multipart/form-data stream parsed into parts, its files streamed into
storage under server-made keys, its text fields kept."""
