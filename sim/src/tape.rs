//! Reverse-mode tape over the Backend ops, for the backprop baselines. OWNER: tape helper.
