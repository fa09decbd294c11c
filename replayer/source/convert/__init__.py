"""`replayer convert`: vendor analytics exports (Amplitude, Mixpanel, Segment, GA4) to start records."""
