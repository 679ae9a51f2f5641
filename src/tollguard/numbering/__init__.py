"""numbering"""
