DROP TABLE IF EXISTS did_numbers;
