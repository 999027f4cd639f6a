-- One database per service: no service reads another's store.
CREATE DATABASE "grant";
CREATE DATABASE enforcement;
CREATE DATABASE notification;
