"""English pages of a service used in France: dates day first and the 24-hour clock.

Every form takes a date as day/month/year, in English too (« DD/MM/YYYY »); with Django's
American formats a birth date typed 04/05/1960 (4 May) was shown back as 05/04/1960 on the
share's page, a confusion of identity, and times read 5:20 p.m. beside French messages
saying 17:20."""

DATE_FORMAT = "j F Y"  # 4 May 1960
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "j F Y, H:i"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "j F"
SHORT_DATE_FORMAT = "d/m/Y"
SHORT_DATETIME_FORMAT = "d/m/Y H:i"
FIRST_DAY_OF_WEEK = 1  # Monday
# A date field without formats of its own (the search's, when the browser has no date
# picker) reads 04/05/2026 as the 4th of May, as the other forms do.
DATE_INPUT_FORMATS = ["%Y-%m-%d", "%d/%m/%Y"]
